import { defineCardinalityContract } from './cardinality-contract.js';
import { openPostgresTestDatabase } from './helpers/databases.js';

defineCardinalityContract('PostgreSQL server', openPostgresTestDatabase);
