-- One database per service, owned by POSTGRES_USER (the user this script runs as).
-- The postgres image runs this only when it starts on an empty data volume; after that,
-- `docker compose down -v` (which deletes all data) is the way to run it again.
CREATE DATABASE identity;
CREATE DATABASE card;
CREATE DATABASE bank;
CREATE DATABASE transit;
