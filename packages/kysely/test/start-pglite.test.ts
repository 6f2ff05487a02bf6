import { openPgliteTestDatabase } from './helpers/databases.js';
import { defineStartContract } from './start-contract.js';

defineStartContract('PGlite', openPgliteTestDatabase);
