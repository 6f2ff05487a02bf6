import { defineSourceContract } from './contract.js';
import { openPgliteTestDatabase } from './helpers/databases.js';

defineSourceContract('PGlite', openPgliteTestDatabase);
