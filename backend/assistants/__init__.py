"""Assistant stacks: a model, default arguments, a persona, directives, RAG collections and MCP tools under a name."""
