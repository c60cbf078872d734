"""The dashboard (design.md 5.6): a web page on the admin listener, its sign-in and live stream."""
