"""RAG: repositories and collections, the vector stores behind them, ingestion jobs, search and pipelines."""
