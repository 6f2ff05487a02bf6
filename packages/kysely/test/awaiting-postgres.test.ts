import { defineAwaitingContract } from './awaiting-contract.js';
import { openPostgresTestDatabase } from './helpers/databases.js';

defineAwaitingContract('PostgreSQL server', openPostgresTestDatabase);
