import { openPostgresTestDatabase } from './helpers/databases.js';
import { defineStartContract } from './start-contract.js';

defineStartContract('PostgreSQL server', openPostgresTestDatabase);
