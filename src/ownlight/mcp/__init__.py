"""Ownlight as an MCP gateway: upstream MCP servers aggregated behind one guarded,
audited hub (``hub.ToolHub``), served to MCP clients at ``/mcp``."""
