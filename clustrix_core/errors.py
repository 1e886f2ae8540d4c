"""The exception hierarchy: one root, one subclass per kind of failure."""

from __future__ import annotations


class ClustrixError(Exception):
    """Root of every error clustrix raises itself."""


class ConfigError(ClustrixError, ValueError):
    """A profile, a resource value or an argument is wrong; nothing was submitted."""


class PluginError(ClustrixError):
    """A plugin is missing, broken, or two plugins claim one name."""


class SerializationError(ClustrixError):
    """The function or its arguments cannot be shipped; nothing was submitted."""


class TransportError(ClustrixError):
    """Moving bytes to or running a command on the submit host failed."""


class CommandError(TransportError):
    """A command on the submit host exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        shown = " ".join(argv)
        detail = (stderr or stdout).strip()
        super().__init__(f"command {shown!r} exited {returncode}: {detail[-2000:]}")


class SubmissionError(ClustrixError):
    """The scheduler refused the job."""


class JobFailedError(ClustrixError):
    """A job ended without an outcome: killed, cancelled, timed out, out of memory, node failure."""

    def __init__(
        self,
        message: str,
        *,
        state: str = "",
        job_id: str = "",
        native_id: str = "",
        stderr_tail: str = "",
    ) -> None:
        self.state = state
        self.job_id = job_id
        self.native_id = native_id
        self.stderr_tail = stderr_tail
        text = message
        if stderr_tail.strip():
            text += "\n--- tail of the job's stderr ---\n" + stderr_tail.rstrip()
        super().__init__(text)


class StatusError(ClustrixError):
    """The scheduler could not be asked about a job for too long; the job may still run."""


class IntegrityError(ClustrixError):
    """A payload or result failed its HMAC check: it was changed by someone without the key."""


class RemoteError(ClustrixError):
    """An exception raised by the remote function whose type cannot be rebuilt locally."""

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}")

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}\n\nRemote traceback:\n{self.remote_traceback}"


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of a re-raised remote exception; its text is the remote traceback."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return "\n\nRemote traceback:\n" + self.text
