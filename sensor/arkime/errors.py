"""Exceptions raised where real Arkime would end the capture process (LOGEXIT).

A plugin sees them inside its callback (or at load time); the runtime logs and
counts them and carries on, so one bad plugin cannot stop the sensor."""


class ArkimeFieldError(KeyError):
    """Unknown field expression (Arkime: fatal in get/add_*/field_get/field_define)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class ArkimeFieldTypeError(TypeError):
    """add_string on a non-string field or add_int on a non-int field (Arkime: fatal)."""


class ArkimeFieldDefinitionError(ValueError):
    """An invalid field_define (termfield db containing -term, too many fields)."""


class ArkimeHandleError(ValueError):
    """A session/parser-buffer/packet handle that is 0 or not (or no longer) valid."""
