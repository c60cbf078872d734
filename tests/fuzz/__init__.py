"""Property tests: random input into the pure parts and the ingress socket, with a fixed seed."""
