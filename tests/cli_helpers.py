"""Run the `agd` CLI in-process from tests (no interpreter start-up per call)."""


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __iter__(self):  # `code, out, err = run_cli(...)`
        return iter((self.returncode, self.stdout, self.stderr))


def run_cli(capsys, *args) -> Result:
    """The CLI in-process: exit code, stdout and stderr, as a subprocess would report them."""
    from agd_deploy.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1  # sys.exit("message") exits 1
    cap = capsys.readouterr()
    return Result(code, cap.out, cap.err)
