"""Typed errors raised by the encoders layer."""


class EncoderError(Exception):
    """Base class for everything the encoders layer raises on purpose."""


class UnknownModelError(EncoderError, KeyError):
    """A model config name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class BundleError(EncoderError):
    """An engine bundle that is missing, incomplete or inconsistent."""


class ParityError(EncoderError):
    """An exported graph whose outputs differ from PyTorch's beyond tolerance."""


class InputError(EncoderError, ValueError):
    """Input to an engine that it cannot encode (bad image, empty text list, wrong shape)."""
