"""Chat: projects, sessions, their message trees, and the chat turn through the gateway."""
