"""`record_export`: one export of a run, as its report records it.

A run exports after training; an export that does not match Keras (or
cannot be converted) must not lose the trained adapters and the other
figures. So every task writes each artifact through `record_export`: on
success the result names the artifact's place in `--out`; on an export
error the result holds that error in one line, the run goes on, and the
command exits 1 at the end (`cli.run_arguments.exit_status`).
"""

from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters import UnsupportedOpsError

# What an export raises when its artifact is refused, for every format.
EXPORT_ERRORS = (ExportVerificationError, UnsupportedOpsError)


def record_export(write, path, final, *, errors=EXPORT_ERRORS, failed=None) -> dict:
    """Runs `write()`, one export to `path`, and records its result or error.

    Args:
        write: callable taking nothing, returning the export's result (a
            JSON-ready dict). It writes the artifact at `path`.
        path: str. Where `write` puts the artifact (in the build folder).
        final: str. Where the artifact will be once the run folder is moved
            to `--out`; the result and any error message name this path.
        errors: tuple of exception types that mean "this export was
            refused" (anything else propagates). Default: `EXPORT_ERRORS`.
        failed: callable taking the error, returning a dict of fields
            the failed result holds besides `error` (figures the error
            carries, keys the report expects), or None.

    Returns:
        `write()`'s dict with `path` set to `final`, or `{"error": message,
        **failed(error)}`.

    Example:
    ```python
    result = record_export(lambda: export(model, path, "onnx").to_dict(),
                           path, "runs/demo/model.onnx")
    ```
    """
    try:
        result = write()
    except errors as error:
        message = " ".join(str(error).split()).replace(path, final)
        return {"error": message, **(failed(error) if failed else {})}
    result["path"] = final
    return result
