"""HTTP pieces the ingress, the admin API and the dashboard share: the client address behind
trusted proxies, JSON answers with their request id, and what counts as header text."""
