import { defineSourceContract } from './contract.js';
import { openPostgresTestDatabase } from './helpers/databases.js';

defineSourceContract('PostgreSQL server', openPostgresTestDatabase);
