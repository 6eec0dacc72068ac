"""smpc runtime: gRPC party nodes, coordinator and dealer over mutual TLS, and the CLI."""
