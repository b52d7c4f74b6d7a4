"""LISA document ingestion library; arrives with the RAG issue."""
