//! insitu-adql: answers ADQL 2.1 queries over mission tables read in place.
//!
//! Its one job: parse ADQL (an sqlparser dialect), translate it to a DataFusion plan with
//! geometry functions as UDFs, register FITS binary tables (through `insitu-engine`),
//! Parquet and CSV files as tables, and run cone searches and cross-matches on a HEALPix
//! index with a spatial-join operator. Not built yet: this crate only marks its place in
//! the layout (see the project's ADQL issue).
