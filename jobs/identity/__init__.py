"""Identity resolution: source identities -> graph -> connected components -> stable member ids."""
