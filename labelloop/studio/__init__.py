"""Label Studio I/O: the SDK client with its retries and errors, a local server, projects and imports."""
