pub(crate) mod s3server;

mod s3;
