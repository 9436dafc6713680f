"""Arkime-compatible Python plugin runtime: field registry, the `arkime`,
`arkime_session` and `arkime_packet` modules, classifier/parser dispatch,
the plugin loader and the SPI session record. Everything here is sans-I/O."""
