pub(crate) mod s3server;
