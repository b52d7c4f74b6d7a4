"""Retrieval evaluation set for ``lisa rag eval``: questions over Debian's ``postgresql-doc-15`` HTML manual."""
