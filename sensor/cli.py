"""Command line: parse options, build library objects, call them."""
import click


@click.group()
def main() -> None:
    """xdpsensor: an XDP pre-classifier feeding Python protocol plugins."""
