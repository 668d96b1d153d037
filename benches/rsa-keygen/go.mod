module talvault.invalid/benches/rsa-keygen

go 1.19
