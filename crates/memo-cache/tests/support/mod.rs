pub mod machines;
pub mod memcached_server;
pub mod postgres_server;
pub mod redis_server;
