"""Query-time relevance layer: engines, retrieval, fusion, pipeline and the HTTP API."""
