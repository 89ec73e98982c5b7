"""``python -m dcae.eval_model``: the command of :mod:`dcae.eval.eval_model`
(CompressAI's ``eval_model`` with DCAE registered and checkpoints loaded
safely), kept at this path because CompressAI users type it.  An entry point,
not a module to import: the code is :func:`dcae.eval.eval_model.main`.
"""

if __name__ == "__main__":  # pragma: no branch
    from dcae.eval.eval_model import main

    main()
