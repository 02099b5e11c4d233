"""metalnet: a bare-metal network manager."""
