from bulk.cli import console

console()
