"""The one error type of the data package."""


class DataError(ValueError):
    """Bad input data: the message names the file, the line and the problem.

    A `ValueError`, so the command line prints it as a one-line user error.

    Example:
    ```python
    try:
        data = load_text_classification(["reviews.csv"])
    except DataError as error:
        print(error)  # reviews.csv:12: empty text in column 'text'
    ```
    """
