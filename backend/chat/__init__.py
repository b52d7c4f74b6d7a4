"""The chat application's backend: sessions, the chat endpoint, and what joins a conversation."""
