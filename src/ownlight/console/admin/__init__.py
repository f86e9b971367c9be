"""The console's admin views: egress, the ledger and keys (``routes``), for admins only.

``NAV`` is what the core's navigation adds for an admin (``console.pages.nav``)."""

NAV = [
    ("/console/admin/egress", "admin.nav.egress"),
    ("/console/admin/ledger", "admin.nav.ledger"),
    ("/console/admin/keys", "admin.nav.keys"),
]
