"""One `Function` per op, grouped by family; forward and backward side by side."""
