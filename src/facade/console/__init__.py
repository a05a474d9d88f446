"""The web console's static files (a data package: HTML, CSS, JavaScript modules; nothing to import)."""
