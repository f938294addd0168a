"""Step 1: a small SentencePiece BPE tokenizer for the ranker.

Trained on every catalog title (movies.csv) plus the prompt's fixed wording, with
LLaMA's conventions: <unk>=0, <s>=1, </s>=2, byte fallback (so "\n" and any rare
character become <0xNN> byte pieces, as in LLaMA), a dummy-prefix space, identity
normalisation and no removal of extra whitespace (the Swift tokenizer then needs no
normaliser). The letters A..T are single pieces: every character of the training text
is a base piece, and split_by_unicode_script keeps "(" and ")" from merging with them.
Two user-defined pieces, "\n-" (a history line's start) and "\n(" (a candidate
line's start), save two tokens per prompt line (about 10% of a prompt).

    python3 make_tokenizer.py [--vocab 8000] [--out /tmp/palr-train/tokenizer.model]
"""

from __future__ import annotations

import argparse
import os

import sentencepiece as spm

import common


USER_DEFINED = ["\n-", "\n("]


def training_lines(titles: list[str]) -> list[str]:
    lines = list(titles)
    # The prompt's fixed wording, repeated so that its words become whole pieces.
    fixed = ["Watched, most recent last:", "Candidates:", "Next: (", "- Toy Story (1995)"]
    fixed += [f"({l}) Heat (1995)" for l in common.LABELS]
    lines += fixed * 50
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--out", default=os.path.join(common.WORK_DIR, "tokenizer.model"))
    args = ap.parse_args()

    titles = [t for _, t in common.read_movies()]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    text_path = os.path.join(os.path.dirname(args.out), "tokenizer-train.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        for line in training_lines(titles):
            f.write(line.replace("\n", " ") + "\n")

    prefix = args.out[: -len(".model")] if args.out.endswith(".model") else args.out
    # Relative names from inside the output folder: the model file records them, and
    # so it is byte-identical whatever the work folder is.
    here = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(args.out)))
    spm.SentencePieceTrainer.train(
        input=os.path.basename(text_path),
        model_prefix=os.path.basename(prefix),
        model_type="bpe",
        vocab_size=args.vocab,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        split_digits=False,
        user_defined_symbols=USER_DEFINED,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=2,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )

    os.chdir(here)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
    common.PromptBuilder(sp)   # raises unless "A".."T" are single pieces
    sample = "Watched, most recent last:\n- Toy Story (1995)\nCandidates:\n(A) Heat (1995)\nNext: ("
    pieces = sp.encode(sample, out_type=str)
    assert sp.decode(sp.encode(sample)) == sample, "the tokenizer does not round-trip the prompt"
    print(f"wrote {prefix}.model: {sp.get_piece_size()} pieces")
    print("sample:", pieces)


if __name__ == "__main__":
    main()
