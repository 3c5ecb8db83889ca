//! TO BE WRITTEN (parsers helper).
