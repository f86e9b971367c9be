"""The console's admin views, for admins only: egress, the ledger and keys (``routes``);
models, routing and metrics (``operations``).

``NAV`` is what the core's navigation adds for an admin (``console.pages.nav``)."""

NAV = [
    ("/console/admin/egress", "admin.nav.egress"),
    ("/console/admin/ledger", "admin.nav.ledger"),
    ("/console/admin/keys", "admin.nav.keys"),
    ("/console/admin/models", "admin.nav.models"),
    ("/console/admin/routing", "admin.nav.routing"),
    ("/console/admin/metrics", "admin.nav.metrics"),
]
