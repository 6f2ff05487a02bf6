import { defineAwaitingContract } from './awaiting-contract.js';
import { openPgliteTestDatabase } from './helpers/databases.js';

defineAwaitingContract('PGlite', openPgliteTestDatabase);
