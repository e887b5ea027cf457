"""CLI subcommand groups (parsers import nothing heavy; each command imports what it needs)."""
