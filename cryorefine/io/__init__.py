"""Reading and writing RELION STAR files and MRC stacks."""
