"""What happened to each request: who asked, where it went, why, what left the domain."""
