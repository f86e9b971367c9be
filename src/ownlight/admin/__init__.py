"""Admin operations as services: the admin API and the console call the same functions,
and each records to the ledger as the CLI does."""
