//! Benchmarks of insitu: criterion benches in `benches/`, comparison scripts beside them.
