"""The prompt library: persona and directive templates, their sharing, revisions and ``{{variable}}`` placeholders."""
