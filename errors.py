"""One error path for users: an expected bad input ends in a short message and exit code 2.

Code that finds a bad flag, file or value raises `UserError` (or a subclass, such as
data_files.DataError) with a message that names the culprit (the flag and its value, the file and line)
and says what to do. Every entry point runs its `main` through `run`, which prints that message
as `<script>: error: <message>` on stderr, without a traceback, and exits with 2, as argparse
does for an unknown flag. A full disk ends the same way, naming the file being written. Ctrl-C
ends with one line and exit code 130. Any other exception is a bug and keeps its traceback.
"""

import errno
import os
import sys


class UserError(ValueError):
    """An expected bad input (a ValueError, so code that catches ValueError still catches it)."""


def run(main, argv=None):
    """main(argv), with a UserError turned into its message and exit code 2."""
    prog = os.path.basename(sys.argv[0]) or "python"
    try:
        return main(argv)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(
            f"{prog}: error: no space left on the device writing {e.filename or 'a file'}; free some and "
            "run the same command again (a training run: with --resume, from its last complete checkpoint)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C: not a bug, and nothing a traceback would explain
        print(
            f"{prog}: interrupted; a training run continues from its last checkpoint with --resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
