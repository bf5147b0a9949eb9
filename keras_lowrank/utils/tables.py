"""Aligned plain-text tables, as the reports print them."""


def format_table(header, rows, last_free=False):
    """Aligned lines: the first column left, the others right.

    With `last_free`, the last column is neither padded nor aligned (for
    free text such as a reason).
    """
    rows = [tuple(header), *rows]
    n = len(header) - (1 if last_free else 0)
    widths = [max(len(row[i]) for row in rows) for i in range(n)]

    def line(row):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:n], widths[1:])]
        return "  ".join(cells + list(row[n:])).rstrip()

    return [line(row) for row in rows]
