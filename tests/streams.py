"""A valid ``.dcae`` stream to start tests from (tests of the container, of
portable flags, ...)."""

from __future__ import annotations

from dcae.format.container import Bitstream
from dcae.format.padding import policy_padding
from dcae.format.shape import latent_shapes


def make_stream(
    height: int = 21, width: int = 37, policy: str = "minimal", multiple: int = 16, **changes
):
    """A ``Bitstream`` of a DCAE model for a ``height x width`` image, fields
    changed by ``changes``."""
    multiple = {"official": 128}.get(policy, multiple)
    pad = policy_padding(policy, height, width, multiple)
    coded = (height + pad[2] + pad[3], width + pad[0] + pad[1])
    y, z = latent_shapes(*coded)
    fields = dict(
        model_kind="dcae",
        model_name="small",
        model_digest=bytes(range(32)),
        quality=None,
        width=width,
        height=height,
        channels=3,
        bit_depth=8,
        padding_policy=policy,
        pad_multiple=multiple,
        padding=pad,
        shape={"y": (96, *y), "hyper": z, "image": coded},
        strings=(b"y-string", b"zz"),
    )
    fields.update(changes)
    return Bitstream(**fields)
