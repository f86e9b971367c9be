"""HTTP route modules. They translate HTTP to pipeline requests and back, nothing more."""
