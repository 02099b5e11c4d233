"""The application service layer: one interface (`Service`) for the CLI and the REST API.

Backends are imported from their modules (`metalnet.service.local`, `metalnet.service.http`)
so a command loads only the one it uses.
"""
