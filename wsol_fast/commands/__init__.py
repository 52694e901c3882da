"""The commands of ``wsol-fast`` (and of the ``launch/`` scripts, which call them): one module per
command, each with its parser and ``<command>_main(argv) -> exit status``; ``common`` holds the
error wrapper and the configuration built from flags."""
