"""OpenAI CLIP's BPE tokenizer, as open_clip's `SimpleTokenizer` runs it, rebuilt as a
`tokenizers` file, so an OpenCLIP engine bundle carries a `tokenizer.json` like any other.

From the same merges file open_clip ships (`bpe_simple_vocab_16e6.txt.gz`), the same
vocabulary order (256 byte symbols, the same with `</w>`, one per merge, then
`<start_of_text>` and `<end_of_text>`), the same split pattern and cleaning (NFC, whitespace
collapsed, lower-cased) and the same truncation (the end token kept last). The ids equal
`SimpleTokenizer`'s on the texts of tests/encoders/test_open_clip_import.py; what it does not
do is ftfy's repair of mis-decoded text and `html.unescape`, which plain captions never need.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.models import BPE

from encoders.errors import BundleError
from encoders.tokenizer import TextTokenizer

SOT, EOT = "<start_of_text>", "<end_of_text>"
# SimpleTokenizer's pattern, less its special-token alternatives (added tokens here)
_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_MERGES = 49152 - 256 - 2  # how many merges of the file SimpleTokenizer keeps
CLEANERS = ("lower", "whitespace")  # SimpleTokenizer's `clean` options this rebuilds


def _byte_symbols() -> list[str]:
    """GPT-2's byte -> printable character table, in SimpleTokenizer's order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def _merges(bpe_path: Path) -> list[tuple[str, str]]:
    with gzip.open(bpe_path) as file:
        lines = file.read().decode("utf-8").split("\n")[1:_MERGES + 1]
    return [tuple(line.split()) for line in lines]


def clip_bpe_tokenizer(bpe_path: str | Path, context_length: int, clean: str = "lower"
                       ) -> TextTokenizer:
    """The tokenizer open_clip builds for a config without `hf_tokenizer_name`."""
    if clean not in CLEANERS:
        raise BundleError(f"open_clip tokenizer cleaning {clean!r} is not supported; "
                          f"supported: {', '.join(CLEANERS)}")
    merges = _merges(Path(bpe_path))
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
    ids = {token: i for i, token in enumerate(vocab)}
    tok = Tokenizer(BPE(vocab=ids, merges=merges, end_of_word_suffix="</w>",
                        continuing_subword_prefix="", fuse_unk=False))
    steps = [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    tok.normalizer = normalizers.Sequence(steps + ([normalizers.Lowercase()] if clean == "lower" else []))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(SOT, special=True), AddedToken(EOT, special=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, ids[SOT]), (EOT, ids[EOT])])
    # padding with the end token keeps "first end token" and "largest id" on the text's own end
    return TextTokenizer(tok, context_length, pad_token=EOT)
